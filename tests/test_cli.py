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
