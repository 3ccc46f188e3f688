import sys

from guardrail_server.cli import main

sys.exit(main())
