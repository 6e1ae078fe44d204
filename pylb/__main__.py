import sys

from pylb.cli import main

sys.exit(main())
