"""``python -m mvreml ...``: the command line (also under ``mpirun -n N python -m mvreml fit ...``)."""
from .cli import main

raise SystemExit(main())
