"""`python -m kit.notebook NOTEBOOK.ipynb ...`: run notebooks headlessly (see `kit.notebook.runner`)."""

from kit.notebook.runner import main

raise SystemExit(main())
