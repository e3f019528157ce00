import sys

from tools.deploy.cli import main

sys.exit(main())
