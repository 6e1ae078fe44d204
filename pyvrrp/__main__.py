import sys

from pyvrrp.cli import main

sys.exit(main())
