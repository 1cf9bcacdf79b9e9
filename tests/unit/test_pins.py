"""The pin editor changes the pins and nothing else: every expected file below is the input with
exactly the pin's bytes replaced, inserted or removed, written out by hand (never produced by the
editor), and compared byte for byte."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.errors import InvalidInput
from controller.pipeline.pins import Pins, edit_pins, read_pins

PROJECT = Path(__file__).resolve().parents[2]

BLOCK = b"""\
# a model
apiVersion: mlgitops.io/v1alpha1
kind: ModelDeployment
metadata:
  name: fraud-detector
spec:
  model: fraud.fraud_detector   # registered as prod.fraud.fraud_detector
  champion:   # pinned by Git
    version: "2"    # since March
  challenger:
    version: "3"  # trying
  # promotion below
  promotion: {policy: auto}
"""

FLOW = b"""\
apiVersion: mlgitops.io/v1alpha1
kind: ModelDeployment
metadata: {name: fraud-detector}
spec:
  model: fraud.fraud_detector
  champion: { version: '2' }   # the one serving
  promotion: {policy: manual}
"""

BARE = b"""\
apiVersion: mlgitops.io/v1alpha1
kind: ModelDeployment
metadata:
    name: churn-predictor
spec:
    model: customers.churn_predictor
    champion:
        version: 4
    serving:
        replicas: 2
"""

FLOW_SPEC = (
    b"apiVersion: mlgitops.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: m}\n"
    b'spec: {model: a.b, champion: {version: "1"}, challenger: {version: "2"}, serving: {}}\n'
)

NO_CHAMPION = b"""\
apiVersion: mlgitops.io/v1alpha1
kind: ModelDeployment
metadata:
  name: fresh
spec:
  model: a.fresh
  serving:
    replicas: 1
"""

TWO_DOCS = b"""\
apiVersion: mlgitops.io/v1alpha1
kind: Environment
metadata: {name: prod}
spec: {catalog: prod, namespace: ml-prod}
---
apiVersion: mlgitops.io/v1alpha1
kind: ModelDeployment
metadata: {name: fraud-detector}
spec:
  model: fraud.fraud_detector
  champion: {version: "3"}
"""

CASES: list[tuple[str, bytes, dict[str, Any], bytes]] = [
    (
        "block: winner promoted, challenger lines removed, comments kept",
        BLOCK,
        {"champion": "3", "drop_challenger": True},
        BLOCK.replace(b'"2"    # since', b'"3"    # since').replace(
            b'  challenger:\n    version: "3"  # trying\n', b""
        ),
    ),
    (
        "block: challenger replaced in its quoting",
        BLOCK,
        {"challenger": "11"},
        BLOCK.replace(b'"3"  # trying', b'"11"  # trying'),
    ),
    (
        "block: both at once",
        BLOCK,
        {"champion": "5", "challenger": "6"},
        BLOCK.replace(b'"2"    #', b'"5"    #').replace(b'"3"  #', b'"6"  #'),
    ),
    (
        "flow: single quotes and inner spaces kept",
        FLOW,
        {"champion": "10"},
        FLOW.replace(b"{ version: '2' }", b"{ version: '10' }"),
    ),
    (
        "flow: a challenger inserted after the champion, in its style",
        FLOW,
        {"challenger": "3"},
        FLOW.replace(
            b"# the one serving\n", b"# the one serving\n  challenger: { version: '3' }\n"
        ),
    ),
    (
        "bare value stays bare, 4-space indentation followed",
        BARE,
        {"champion": "5"},
        BARE.replace(b"version: 4", b"version: 5"),
    ),
    (
        "bare: a challenger inserted with the champion's indentation and quoting",
        BARE,
        {"challenger": "5"},
        BARE.replace(b"version: 4\n", b"version: 4\n    challenger:\n        version: 5\n"),
    ),
    (
        "CRLF line endings kept, and used for inserted lines",
        BARE.replace(b"\n", b"\r\n"),
        {"challenger": "5"},
        BARE.replace(b"version: 4\n", b"version: 4\n    challenger:\n        version: 5\n").replace(
            b"\n", b"\r\n"
        ),
    ),
    (
        "CRLF: challenger removed with its line endings",
        BLOCK.replace(b"\n", b"\r\n"),
        {"champion": "3", "drop_challenger": True},
        BLOCK.replace(b'"2"    # since', b'"3"    # since')
        .replace(b'  challenger:\n    version: "3"  # trying\n', b"")
        .replace(b"\n", b"\r\n"),
    ),
    (
        "flow spec: entry removed with its comma",
        FLOW_SPEC,
        {"champion": "2", "drop_challenger": True},
        FLOW_SPEC.replace(b'{version: "1"}, challenger: {version: "2"}', b'{version: "2"}'),
    ),
    (
        "flow spec: challenger inserted after the champion",
        FLOW_SPEC.replace(b', challenger: {version: "2"}', b""),
        {"challenger": "7"},
        FLOW_SPEC.replace(b'challenger: {version: "2"}', b'challenger: {version: "7"}'),
    ),
    (
        "no champion yet: inserted after the model, default block style",
        NO_CHAMPION,
        {"champion": "1"},
        NO_CHAMPION.replace(b"a.fresh\n", b'a.fresh\n  champion:\n    version: "1"\n'),
    ),
    (
        "the ModelDeployment of a file that also holds the Environment",
        TWO_DOCS,
        {"champion": "4"},
        TWO_DOCS.replace(b'{version: "3"}', b'{version: "4"}'),
    ),
    (
        "no newline at the end of the file",
        FLOW.rstrip(b"\n").replace(b"  promotion: {policy: manual}", b"").rstrip(b"\n"),
        {"challenger": "3"},
        FLOW.replace(b"  promotion: {policy: manual}\n", b"").rstrip(b"\n")
        + b"\n  challenger: { version: '3' }\n",
    ),
    (
        "a byte-order mark kept",
        b"\xef\xbb\xbf" + BARE,
        {"champion": "9"},
        b"\xef\xbb\xbf" + BARE.replace(b"version: 4", b"version: 9"),
    ),
]


@pytest.mark.parametrize(
    ("data", "edit", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_edits_change_the_pins_and_no_other_byte(
    data: bytes, edit: dict[str, Any], expected: bytes
) -> None:
    got = edit_pins(data, path="md.yaml", **edit)
    assert got == expected
    assert edit_pins(got, path="md.yaml", **edit) == got  # applied twice: nothing more


def _example(env: str, name: str) -> bytes:
    return (PROJECT / "environments" / env / f"{name}.yaml").read_bytes()


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
@pytest.mark.parametrize("name", ["fraud-detector", "churn-predictor"])
def test_the_example_files(env: str, name: str) -> None:
    data = _example(env, name)
    pins = read_pins(data, path=f"{env}/{name}.yaml")
    assert pins.champion is not None
    champion_line = f'    version: "{pins.champion}"\n'.encode()
    block = b"  champion:\n" + champion_line
    assert block in data

    promoted = edit_pins(data, path="f.yaml", champion="42")
    assert promoted == data.replace(block, b'  champion:\n    version: "42"\n')

    proposed = edit_pins(data, path="f.yaml", challenger="43")
    if pins.challenger is None:
        assert proposed == data.replace(block, block + b'  challenger:\n    version: "43"\n')
    else:
        old = f'  challenger:\n    version: "{pins.challenger}"\n'.encode()
        assert proposed == data.replace(old, b'  challenger:\n    version: "43"\n')
        won = edit_pins(data, path="f.yaml", champion=pins.challenger, drop_challenger=True)
        winner = f'  champion:\n    version: "{pins.challenger}"\n'.encode()
        assert won == data.replace(block + old, winner)
        assert read_pins(won, path="f.yaml") == Pins(pins.challenger, None)


def test_nothing_to_change_returns_the_same_bytes() -> None:
    assert edit_pins(BLOCK, path="md.yaml", champion="2", challenger="3") is BLOCK
    assert edit_pins(BARE, path="md.yaml", drop_challenger=True) is BARE
    assert read_pins(BARE, path="md.yaml") == Pins("4", None)


REFUSED = [
    ("an anchor on the pin", BLOCK.replace(b"  champion:   #", b"  champion: &pin   #"), "anchor"),
    (
        "an alias as the pin",
        BLOCK.replace(
            b"  name: fraud-detector\n", b"  name: fraud-detector\n  labels: &pin {version: '5'}\n"
        ).replace(
            b'  champion:   # pinned by Git\n    version: "2"    # since March\n',
            b"  champion: *pin\n",
        ),
        "anchor",
    ),
    ("an anchored version", BLOCK.replace(b'version: "2"', b'version: &v "2"'), "anchor"),
    ("a tag on the version", BLOCK.replace(b'version: "2"', b"version: !!str 2"), "tag"),
    ("a block scalar", BARE.replace(b"version: 4\n", b"version: |\n          4\n"), "block scalar"),
    (
        "a merge key in spec",
        BARE.replace(b"spec:\n", b"spec:\n    <<: {serving: {}}\n"),
        "merge key",
    ),
    (
        "a duplicate key",
        BARE.replace(b"    serving:", b"    champion:\n        version: 5\n    serving:"),
        "duplicate key",
    ),
    ("two ModelDeployments", BARE + b"---\n" + BARE, "several documents"),
    ("no ModelDeployment", b"kind: Environment\nspec: {}\n", "no ModelDeployment"),
    ("lone CR line endings", BARE.replace(b"\n", b"\r"), "lone CR"),
    ("not UTF-8", BARE.replace(b"churn", b"ch\xffurn"), "not UTF-8"),
    ("invalid YAML", BARE + b"  - : [\n", "invalid YAML"),
    (
        "a pin that is not a mapping",
        BARE.replace(b"    champion:\n        version: 4\n", b'    champion: "4"\n'),
        "not a mapping",
    ),
]


@pytest.mark.parametrize(("data", "words"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_files_it_cannot_edit_safely_are_refused(data: bytes, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        edit_pins(data, path="environments/prod/m.yaml", champion="9")
    [problem] = caught.value.problems
    assert problem.file == "environments/prod/m.yaml"
    assert words in problem.message
    assert "\n" not in str(problem)


def test_a_version_and_the_other_pin_are_checked() -> None:
    with pytest.raises(InvalidInput, match="not a version"):
        edit_pins(BLOCK, path="md.yaml", champion="v3")
    with pytest.raises(InvalidInput, match="must differ"):
        edit_pins(BLOCK, path="md.yaml", champion="3")  # the challenger still pins 3


def test_several_documents_are_told_apart_by_name() -> None:
    other = BARE.replace(b"churn-predictor", b"other").replace(b"version: 4", b"version: 8")
    data = BARE + b"---\n" + other
    got = edit_pins(data, path="md.yaml", name="other", champion="9")
    assert got == BARE + b"---\n" + other.replace(b"version: 8", b"version: 9")
