import pytest
import torch


def pytest_addoption(parser):
    parser.addoption(
        "--dtype",
        default=None,
        choices=["float32", "float64"],
        help="run the flow property tests in this dtype only",
    )
    parser.addoption("--device", default="cpu", help="device for the flow property tests (cpu, cuda)")


@pytest.fixture
def device(request):
    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    return torch.device(name)


def pytest_collection_modifyitems(config, items):
    only = config.getoption("--dtype")
    if only is None:
        return
    skip = pytest.mark.skip(reason=f"--dtype {only}")
    for item in items:
        if "float32" in item.name and only == "float64" or "float64" in item.name and only == "float32":
            item.add_marker(skip)
