import sys
from pathlib import Path

# make `graphs` (the IR-building helpers next to this file) importable by the test modules
sys.path.insert(0, str(Path(__file__).parent))
