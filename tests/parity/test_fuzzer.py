"""The differential fuzzer (diff_fuzz.py) finds a difference planted in rselectors and
shrinks it to a script that shows it, so that it cannot rot into a fuzzer that finds nothing
(`.ci/run`'s differential-fuzz stage runs it for real)."""

import diff_fuzz
import rselectors


def plant_wrong_message(monkeypatch):
    """rselectors.PollSelector.unregister() of an fd not registered, with a wrong message."""

    class PollSelector(rselectors.PollSelector):
        def unregister(self, fileobj):
            try:
                return super().unregister(fileobj)
            except KeyError as exc:
                raise KeyError(str(exc.args[0]).replace("not registered", "not known")) from None

    PollSelector.__qualname__ = "PollSelector"
    monkeypatch.setattr(rselectors, "PollSelector", PollSelector)


def test_fuzzer_finds_and_shrinks_a_planted_difference(monkeypatch, capsys):
    plant_wrong_message(monkeypatch)
    findings, stats = diff_fuzz.fuzz("planted", seconds=60, classes=["Poll"], max_findings=1,
                                     log=lambda *args: None, check=False)
    assert findings, "no difference found in %(trials)d trials" % stats
    found = findings[0]
    assert "sel.unregister(" in found.steps[found.index][1]
    assert found.outs[0][0][2].endswith("is not registered'")
    assert found.outs[1][0][2].endswith("is not known'")
    # Shrunk: the unregister and at most what makes its argument.
    assert 1 <= len(found.shrunk) <= 3, found.shrunk
    assert found.shrunk[-1][1].startswith("sel.unregister(")
    # The script carries everything it needs, and shows the difference (here, where the
    # planted class is: run alone, rselectors has no such difference).
    script = {"__name__": "reproduction"}
    exec(compile(found.script, "<reproduction>", "exec"), script)
    assert script["repro_main"](found.kind, found.variant, script["STEPS"]) == 1
    assert "FIRST DIFFERENCE" in capsys.readouterr().out


def test_fuzzer_finds_nothing_when_there_is_nothing(capsys):
    findings, stats = diff_fuzz.fuzz("quiet", seconds=2, classes=diff_fuzz.available_classes(),
                                     log=lambda *args: None, check=False)
    assert stats["trials"] > 0 and stats["steps"] > 0
    assert not findings, [f.shrunk for f in findings]
