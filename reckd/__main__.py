import sys

from reckd.cli.main import main

sys.exit(main())
