"""Files on disk and in the page cache: atomic writes, locks, the roles a command's files play,
and spooling of streams that cannot be read twice. The lowest layer beside ``errors``."""
