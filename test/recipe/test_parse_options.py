"""utils/parse_options.sh: option forms, --config, --help and the errors it reports."""

from .shell import RECIPE, bash

PARSE = RECIPE / "utils" / "parse_options.sh"


def parse(tmp_path, args: str):
    """Sources the parser in a script with a few defaults and prints the results."""
    script = f"""
set -euo pipefail
stage=1
stop_stage=8
name=default
use_gpu=false
readonly fixed=1
help_message="Usage: demo [options] <dir>"
set -- {args}
. {PARSE}
echo "stage=$stage stop_stage=$stop_stage name=[$name] use_gpu=$use_gpu"
echo "rest=$# [$*]"
"""
    return bash(script, cwd=tmp_path)


def test_space_and_equals_forms_with_dashes(tmp_path):
    res = parse(tmp_path, "--stage 3 --stop-stage=5 --name 'a b' --use_gpu true pos1 pos2")
    assert res.returncode == 0, res.stderr
    assert "stage=3 stop_stage=5 name=[a b] use_gpu=true" in res.stdout
    assert "rest=2 [pos1 pos2]" in res.stdout


def test_value_may_be_empty_or_contain_equals(tmp_path):
    res = parse(tmp_path, "--name '' --stop_stage=4")
    assert res.returncode == 0, res.stderr
    assert "stop_stage=4 name=[]" in res.stdout
    res = parse(tmp_path, "--name=k=v")
    assert "name=[k=v]" in res.stdout


def test_double_dash_stops_parsing(tmp_path):
    res = parse(tmp_path, "--stage 2 -- --stage 9")
    assert res.returncode == 0, res.stderr
    assert "stage=2 " in res.stdout
    assert "rest=2 [--stage 9]" in res.stdout


def test_config_file_is_read_and_command_line_wins(tmp_path):
    conf = tmp_path / "opts.conf"
    conf.write_text("# defaults for a run\nstage=4\nname=from_conf\n")
    # --config comes after --stage on purpose: the command line still wins.
    res = parse(tmp_path, f"--stage 6 --config {conf}")
    assert res.returncode == 0, res.stderr
    assert "stage=6 stop_stage=8 name=[from_conf]" in res.stdout
    res = parse(tmp_path, f"--config={conf}")
    assert "stage=4 " in res.stdout


def test_missing_config_file_is_named(tmp_path):
    res = parse(tmp_path, "--config nowhere.conf")
    assert res.returncode == 1
    assert "nowhere.conf" in res.stderr


def test_unknown_option_is_an_error_naming_it(tmp_path):
    res = parse(tmp_path, "--stage 2 --no-such-thing 3")
    assert res.returncode == 1
    assert "unknown option --no-such-thing" in res.stderr
    assert "stage=" not in res.stdout


def test_option_without_value(tmp_path):
    res = parse(tmp_path, "--stage")
    assert res.returncode == 1
    assert "--stage needs a value" in res.stderr


def test_boolean_option_takes_only_true_or_false(tmp_path):
    res = parse(tmp_path, "--use-gpu yes")
    assert res.returncode == 1
    assert "--use-gpu takes true or false" in res.stderr


def test_readonly_variable_is_not_an_option(tmp_path):
    res = parse(tmp_path, "--fixed 2")
    assert res.returncode == 1
    assert "--fixed is not an option" in res.stderr


def test_help_prints_usage_and_exits_zero(tmp_path):
    for flag in ["--help", "-h", "--stage 2 --help"]:
        res = parse(tmp_path, flag)
        assert res.returncode == 0, (flag, res.stderr)
        assert res.stdout.strip() == "Usage: demo [options] <dir>"
