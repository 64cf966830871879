"""CLI plumbing: user errors are one line and exit code 2; --version works."""
import pytest

from simplepose import cli


def test_user_errors_are_one_line(capsys):
    @cli.run_main
    def main(argv=None):
        raise cli.UserError("data.h5: file not found")

    assert main([]) == 2
    err = capsys.readouterr().err
    assert err == "error: data.h5: file not found\n"


def test_config_errors_are_one_line(capsys):
    @cli.run_main
    def main(argv=None):
        parser = cli.make_parser("doc")
        cli.add_config_args(parser)
        return cli.config_from_args(parser.parse_args(argv)).train.batch_size

    assert main(["--set", "train.batch_size=3"]) == 3
    assert main(["--set", "train.nope=3"]) == 2
    assert "unknown key 'nope'" in capsys.readouterr().err


def test_programming_errors_still_raise():
    @cli.run_main
    def main(argv=None):
        raise KeyError("bug")

    with pytest.raises(KeyError):
        main([])


def test_version(capsys):
    parser = cli.make_parser("doc")
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["--version"])
    assert e.value.code == 0
    assert "simplepose" in capsys.readouterr().out


def test_tta_flags_default_to_the_models_settings():
    parser = cli.make_parser("doc")
    cli.add_tta_args(parser)
    assert (parser.parse_args([]).scales, parser.parse_args([]).flip) == (None, None)
    args = parser.parse_args(["--scales", "0.5", "1", "--no-flip"])
    assert (args.scales, args.flip) == ([0.5, 1.0], False)
    assert parser.parse_args(["--flip"]).flip is True


def test_topdown_oracle_through_the_evaluation_cli(synthetic_coco, tmp_path, capsys):
    import json
    import runpy

    main = runpy.run_path(str(cli.__file__).replace("simplepose/cli.py", "testing/evaluation.py"))["main"]
    rc = main(["--oracle", "--annotations", str(synthetic_coco.ann_file), "--out", str(tmp_path),
               "--set", "model.architecture=topdown", "data.skeleton=coco17", "data.stride=4"])
    assert rc == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["AP"] > 0.9  # ground-truth boxes and maps: only keypoints outside the enlarged box are lost
    assert "AP" in capsys.readouterr().out


def test_repeated_set_flags_accumulate():
    parser = cli.make_parser("doc")
    cli.add_config_args(parser)
    args = parser.parse_args(["--set", "train.batch_size=3", "--set", "train.epochs=7", "inference.flip=true"])
    cfg = cli.config_from_args(args)
    assert (cfg.train.batch_size, cfg.train.epochs, cfg.inference.flip) == (3, 7, True)
    assert parser.parse_args([]).overrides == []
