"""The CUDA tests' harness, tried on this CPU so that it does not rot between GPU checks.

tests/gpu runs only where there is CUDA (a GPU check), so its helpers would otherwise be
exercised nowhere: here the same model builder and LoRA check run on the CPU.
"""

from __future__ import annotations

from gpu_harness import check_lora_run, gpu_workspace, llama_dir  # noqa: F401


def test_the_lora_check_of_the_gpu_tests_passes_on_the_cpu(gpu_workspace, llama_dir):
    check_lora_run(gpu_workspace, llama_dir, "cpu")


def test_this_session_hides_cuda_from_itself_and_its_children():
    import os
    import subprocess
    import sys

    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""  # tests/conftest.py: a session with tests not marked gpu
    child = subprocess.run([sys.executable, "-c", "import os; print(repr(os.environ.get('CUDA_VISIBLE_DEVICES')))"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == "''"


def test_gpu_tests_run_in_a_session_of_their_own_and_are_skipped_without_cuda():
    import subprocess
    import sys

    from conftest import CUDA_HIDDEN, REPO

    def session(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    alone = session("-m", "gpu", "tests/gpu")
    assert "needs CUDA (no CUDA device here)" in alone and " passed" not in alone
    hidden = "tests/engine/test_gpu_harness.py::test_this_session_hides_cuda_from_itself_and_its_children"
    mixed = session("tests/gpu/test_cuda_training.py", hidden)
    assert CUDA_HIDDEN in mixed and "1 passed" in mixed
