import sys

from dama.cli.main import main

sys.exit(main())
