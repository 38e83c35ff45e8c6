"""Suite-wide settings: every test uses tiny models, for which one torch thread is faster than two and does
not spin against other processes on a shared 2-core machine."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
