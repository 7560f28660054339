"""Config validation: schema defaults, refusals with the key path, and the documented key table."""

from pathlib import Path

import pytest
import yaml

from genosae.config import load_config, sae_trains_on_stream, schema_markdown, validate_config
from genosae.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def test_demo_config_validates_and_fills_defaults():
    cfg = load_config(ROOT / "config/config.yaml", check_files=False)
    assert cfg["sae"]["architecture"] == "batchtopk"
    assert cfg["designs"]["promoters"]["region_type"] == "promoter"
    assert cfg["designs"]["cohort"]["simulate"]["motif"] == "REB1"
    # defaults filled for a key absent from the file
    assert validate_config({})["model"]["dtype"] == "auto"


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"sae": {"k": "many"}}, "key 'sae.k'"),
        ({"sae": {"architecture": "jumbo"}}, "key 'sae.architecture'"),
        ({"model": {"batch_sise": 4}}, "unknown key(s): 'batch_sise'"),
        ({"bogus": 1}, "unknown key(s): 'bogus'"),
        ({"windows": {"size": 4}}, "key 'windows.size'"),
        ({"designs": {"x": {"kind": "region", "gene_sett": "a"}}}, "designs.x"),
        ({"designs": {"x": {"kind": "nope"}}}, "designs.x"),
    ],
)
def test_bad_values_name_the_key(tmp_path, patch, expected):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(patch))
    with pytest.raises(InputError) as err:
        load_config(path, check_files=False)
    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_missing_input_file_is_refused(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"reference": {"source": "files", "fasta": "nope.fa", "annotation": "x.gff3"}}))
    with pytest.raises(InputError, match=r"key 'reference.fasta'.*nope.fa' does not exist"):
        load_config(path)


def test_files_source_requires_paths(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"reference": {"source": "files"}}))
    with pytest.raises(InputError, match=r"required when reference\.source is .files."):
        load_config(path)


def test_empty_and_invalid_yaml(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        load_config(empty)
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  path: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(broken)


def test_config_readme_documents_every_key():
    readme = (ROOT / "config/README.md").read_text()
    assert schema_markdown() in readme, "config/README.md is stale: regenerate its key table from the schema"


#: The JSON-schema keywords a property definition may hold; anything else is a YAML slip
#: (``{description: GFF3, GTF or BED}`` parses as a description "GFF3" plus keys "GTF or BED").
SCHEMA_KEYWORDS = {"type", "default", "description", "enum", "minimum", "maximum", "exclusiveMinimum",
                   "items", "minItems", "maxItems", "properties", "additionalProperties", "required",
                   "oneOf", "anyOf", "pattern"}


def _property_defs(node: dict, path: str = ""):
    for name, sub in (node.get("properties") or {}).items():
        yield f"{path}{name}", sub
        yield from _property_defs(sub, f"{path}{name}.")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield f"{path}*", extra
        yield from _property_defs(extra, f"{path}*.")


def test_schema_descriptions_are_whole_sentences():
    from genosae.config import load_schema

    defs = list(_property_defs(load_schema()))
    assert len(defs) > 80
    for path, sub in defs:
        assert set(sub) <= SCHEMA_KEYWORDS, (path, set(sub) - SCHEMA_KEYWORDS)
        desc = sub.get("description")
        if desc is not None:
            assert isinstance(desc, str) and desc.strip()[-1] in ".)", (path, desc)


def test_simulated_design_paths_follow_outdir(tmp_path):
    cfg = validate_config({"outdir": str(tmp_path / "elsewhere"),
                           "designs": {"coh": {"kind": "cohort", "simulate": {"n_cases": 3}}}})
    assert cfg["designs"]["coh"]["samples"] == f"{tmp_path}/elsewhere/simulate/coh/samples.tsv"
    assert cfg["designs"]["coh"]["regions"] == f"{tmp_path}/elsewhere/simulate/coh/regions.bed"
    demo = load_config(ROOT / "config/config.yaml", check_files=False)
    assert demo["designs"]["cohort"]["samples"] == "results/simulate/cohort/samples.tsv"
    with pytest.raises(InputError, match=r"designs\.coh\.samples"):
        validate_config({"outdir": "out", "designs": {"coh": {"kind": "cohort", "simulate": {},
                                                              "samples": "results/simulate/coh/samples.tsv"}}})


def test_evo2_model_path_is_not_checked_as_a_folder(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"model": {"path": "evo2:evo2_7b", "layer": 26, "submodule": "mlp.l3"}}))
    assert load_config(path)["model"]["submodule"] == "mlp.l3"
    assert validate_config({})["model"]["submodule"] == ""
    path.write_text(yaml.safe_dump({"model": {"path": "./no-such-model"}}))
    with pytest.raises(InputError, match=r"model\.path"):
        load_config(path)


@pytest.mark.parametrize(("patch", "stream"), [
    ({}, False),  # the demo: 1,200 x 512 tokens on the store
    ({"atlas": {"n_windows": "all"}}, True),  # the whole genome streams
    ({"atlas": {"n_windows": 40_000}}, True),  # 20.5 M tokens > 20 M
    ({"atlas": {"n_windows": 30_000}}, False),
    ({"atlas": {"n_windows": 30_000}, "model": {"reverse_complement": True}}, True),
    ({"atlas": {"n_windows": "all"}, "sae": {"source": "store"}}, False),
    ({"sae": {"source": "stream"}}, True),
])
def test_sae_source_switches_to_the_model_stream_above_the_threshold(patch, stream):
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    for key, value in patch.items():
        cfg[key].update(value)
    assert sae_trains_on_stream(validate_config(cfg)) is stream
