"""The results CLI on a real run: comparison, test evaluation and figures."""

from tune_mnist.plots import FIGURE_FILES
from tune_mnist.results import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_cli_prints_comparison_and_test_evaluation_without_scoring_the_test_set_again(
    small_run, capsys
):
    evaluated = (small_run / "test_eval.parquet").stat().st_mtime_ns
    assert main([str(small_run)]) == 0
    assert (small_run / "test_eval.parquet").stat().st_mtime_ns == evaluated
    out = capsys.readouterr().out
    assert "Primary result" in out
    assert "Test set, final model of each arm" in out
    assert "plain" in out and "mixup" in out


def test_plot_writes_five_png_figures(small_run, capsys):
    for file in FIGURE_FILES.values():
        (small_run / file).unlink(missing_ok=True)
    assert main([str(small_run), "--plot", "--metric", "val_mixed_acc"]) == 0
    assert "skipped" not in capsys.readouterr().out
    for file in FIGURE_FILES.values():
        content = (small_run / file).read_bytes()
        assert content[:8] == PNG_SIGNATURE and len(content) > 1000, file
