"""One module per subcommand: parse options, build a config, call one library function, render."""
