import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import preprocess_reversal  # noqa: E402


@pytest.fixture(scope="session")
def reversal_data(tmp_path_factory):
    """Binarized toy translation data (target = reversed source), shared by the session."""
    return preprocess_reversal(tmp_path_factory.mktemp("reversal"))
