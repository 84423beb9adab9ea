"""The one exception data_prep raises for bad input; the CLI turns it into `data_prep: error: …`."""


class DataPrepError(Exception):
    """Bad input: the message names the file, line or flag, what was expected and what was found."""
