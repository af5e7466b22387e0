"""Every config resolves to the same model, schedule, optimizer, data and TTA
as in the snapshot ``tests/data/resolved_configs.json`` (taken before the
configs were split into ``configs/_base_`` fragments; its ``commit`` field
names the commit). See ``resolved_configs.py`` for what is compared.

``ALLOWED_CHANGES`` lists, per config, the snapshot paths that were changed on
purpose, each with the test that proves the effective result is unchanged.
"""
import pytest

from resolved_configs import (diff, leaf_configs, load_snapshot,  # noqa: I
                              resolve)

SNAPSHOT = load_snapshot()

#: {config: {path prefix: why}}: differences from the snapshot made on
#: purpose. Every other difference fails.
ALLOWED_CHANGES = {}


def _allowed(rel, problem):
    path = problem.split(':', 1)[0]
    return any(
        path == prefix or path.startswith(prefix + '.')
        or path.startswith(prefix + '[')
        for prefix in ALLOWED_CHANGES.get(rel, {}))


def test_snapshot_covers_every_config():
    assert sorted(SNAPSHOT['configs']) == leaf_configs()
    assert len(SNAPSHOT['commit']) == 40
    assert SNAPSHOT['configs_modified_since_commit'] is False


@pytest.mark.parametrize('rel', leaf_configs())
def test_config_resolves_as_in_snapshot(rel):
    problems = [
        p for p in diff(SNAPSHOT['configs'][rel], resolve(rel))
        if not _allowed(rel, p)
    ]
    assert not problems, (
        f'configs/{rel} resolves differently from the snapshot '
        f'(commit {SNAPSHOT["commit"][:10]}):\n' + '\n'.join(problems))


def test_allowed_changes_are_real():
    """An allowed change that no longer differs is stale: remove it."""
    for rel, prefixes in ALLOWED_CHANGES.items():
        problems = diff(SNAPSHOT['configs'][rel], resolve(rel))
        for prefix in prefixes:
            assert any(
                p.split(':', 1)[0] == prefix
                or p.split(':', 1)[0].startswith((prefix + '.', prefix + '['))
                for p in problems), (rel, prefix)


def test_diff_reports_paths():
    """The comparison itself can fail: it names added, removed, changed
    values, list lengths and tuple-vs-list changes."""
    old = {'a': {'b': 1, 'c': [1, 2]}, 't': {'__tuple__': [1]}, 'x': 0}
    new = {'a': {'b': 2, 'c': [1]}, 't': [1], 'y': 0}
    assert diff(old, new) == [
        'a.b: 1 -> 2', 'a.c: length 2 -> 1', "t: {'__tuple__': [1]} -> [1]",
        'x: removed', 'y: added'
    ]
    assert diff({'v': 1}, {'v': 1.0}) == ['v: 1 -> 1.0']
    assert diff(old, old) == []

