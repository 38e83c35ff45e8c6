"""Run these tests single-threaded: on the shared 2-core machine, OpenMP threads contend and slow tiny convs."""

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
