"""The fits of the settings search, run in this process, in worker processes or as Ray tasks.

A task trains one candidate on one fold's training rows and scores the fold's held-out rows
(:func:`fit_fold`); the rows and the graph are sent to each worker once (:func:`init_worker`), and
each worker computes with one torch thread.
"""

from __future__ import annotations

import contextlib
import sys
import time
import types

import numpy as np
import torch

from sirenvae.graph import LatentSplit
from sirenvae.models import ModelConfig

__all__ = ["Pool", "fit_fold", "init_worker"]

_WORKER: dict = {}


def init_worker(payload: dict) -> None:
    """Prepares a worker once: one torch thread, the split and the rows."""
    from sirenvae import graph_io

    torch.set_num_threads(1)
    _WORKER["split"] = LatentSplit(graph_io.from_dict(payload["graph"]), payload["latent"], allow_empty=True)
    _WORKER["x"] = torch.as_tensor(payload["x"])


def fit_fold(task: dict) -> dict:
    """Trains one candidate on one fold's training rows and scores its held-out rows."""
    from sirenvae.objectives import evaluate_rows
    from sirenvae.pipeline import TrainOptions, train_model
    from sirenvae.training import FitConfig, TrainingError

    split, x = _WORKER["split"], _WORKER["x"]
    held = np.asarray(task["held"])
    mask = np.ones(x.shape[0], dtype=bool)
    mask[held] = False
    start = time.perf_counter()
    try:
        model, history = train_model(
            split,
            x[torch.as_tensor(mask)],
            model_config=ModelConfig.from_dict(task["config"]),
            fit_config=FitConfig(**task["fit"]),
            options=TrainOptions(**task["options"]),
            device=task.get("device"),
        )
        middle = time.perf_counter()
        torch.manual_seed(task["fit"]["seed"])
        valid = x[torch.as_tensor(held)].to(model.loc.device)
        nll = evaluate_rows(model, valid, importance_samples=task["importance_samples"])["nll"]
    except TrainingError as e:
        return {"status": "diverged", "error": str(e).splitlines()[0], "seconds": time.perf_counter() - start}
    except Exception as e:  # noqa: BLE001 - a failed candidate is a result of the search, kept
        return {"status": "failed", "error": f"{type(e).__name__}: {e}".splitlines()[0]}
    nll = nll.double().cpu().numpy()
    status = "ok" if np.isfinite(nll).all() else "non-finite"
    return {
        "status": status,
        "nll": nll.tolist(),
        "epochs": len(history.train_loss),
        "stopped": history.stopped,
        "train_seconds": middle - start,
        "seconds": time.perf_counter() - start,
    }


class Pool:
    """Runs fold fits in this process, in worker processes or as Ray tasks; ``wait`` returns the
    finished ones.
    """

    def __init__(self, payload: dict, workers: int, address: str | None, device: str | None = None) -> None:
        self.workers, self.address, self.running = workers, address, {}
        if address is not None and device not in (None, "cpu"):
            raise ValueError("--address runs the search's fits as CPU tasks; give --device cpu with it")
        if address is not None:
            try:
                import ray
            except ImportError:
                raise ImportError("--address needs Ray: pip install 'sirenvae[ray]'") from None
            _reachable(address)
            self.owned = not ray.is_initialized()
            try:
                ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
            except Exception as e:  # noqa: BLE001 - Ray's many connection errors, as one line
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise ValueError(f"cannot reach the Ray cluster at --address {address}: {first}") from None
            self.ray = ray
            self.remote = ray.remote(num_cpus=1)(_ray_fit)
            self.payload = ray.put(payload)
        elif workers > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            self.executor = ProcessPoolExecutor(
                workers, mp_context=mp.get_context("spawn"), initializer=init_worker, initargs=(payload,)
            )
        else:
            self.saved, self.threads = dict(_WORKER), torch.get_num_threads()
            init_worker(payload)

    @property
    def free(self) -> bool:
        return len(self.running) < self.workers

    def submit(self, key, task: dict) -> None:
        if self.address is not None:
            self.running[self.remote.remote(self.payload, task)] = key
        elif self.workers > 1:
            with _main_hidden():  # a worker may be started here
                self.running[self.executor.submit(fit_fold, task)] = key
        else:
            self.running[_Done(fit_fold(task))] = key

    def wait(self) -> list[tuple[object, dict]]:
        """The fits that finished (at least one); a worker that died is one clear error."""
        try:
            if self.address is not None:
                done, _ = self.ray.wait(list(self.running), num_returns=1)
                return [(self.running.pop(ref), self.ray.get(ref)) for ref in done]
            if self.workers > 1:
                from concurrent.futures import FIRST_COMPLETED, wait

                done, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
                return [(self.running.pop(f), f.result()) for f in done]
            return [(self.running.pop(f), f.result()) for f in list(self.running)]
        except Exception as e:  # noqa: BLE001 - a broken pool, a crashed Ray worker: one line
            raise ValueError(
                f"a worker of the settings search died ({type(e).__name__}; out of memory?); "
                "run the same command with --resume (finished folds are kept), perhaps with fewer --workers"
            ) from None

    def close(self) -> None:
        if self.address is not None:
            for ref in self.running:
                self.ray.cancel(ref)
            if self.owned:
                self.ray.shutdown()
        elif self.workers > 1:
            self.executor.shutdown(wait=False, cancel_futures=True)
        elif self.address is None:
            _WORKER.clear()
            _WORKER.update(self.saved)
            torch.set_num_threads(self.threads)


def _reachable(address: str) -> None:
    """Refuses at once a ``host:port`` cluster address where nothing listens (Ray itself retries
    for minutes); other forms (``ray://...``, ``auto``) are left to Ray.
    """
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "/" in address:
        return
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as e:
        raise ValueError(f"cannot reach the Ray cluster at --address {address}: {e}") from None


@contextlib.contextmanager
def _main_hidden():
    """Hides the caller's ``__main__`` while worker processes start: a spawned worker would otherwise
    run a user's script again (one without an ``if __name__ == "__main__":`` guard fails). The
    workers need nothing from it: their functions live in this module.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


class _Done:
    def __init__(self, value: dict) -> None:
        self.value = value

    def result(self) -> dict:
        return self.value


def _ray_fit(payload: dict, task: dict) -> dict:
    if _WORKER.get("token") != payload["token"]:  # a Ray worker may serve several searches
        init_worker(payload)
        _WORKER["token"] = payload["token"]
    return fit_fold(task)
