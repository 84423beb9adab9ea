from reckd.cli.main import entry

entry()
