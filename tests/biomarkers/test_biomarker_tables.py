"""Biomarker rows carry a concept or motif name only where it passed its test."""

import numpy as np
import pandas as pd

from genosae.biomarkers.profiles import catalog_claims
from genosae.biomarkers.tables import BIOMARKER_COLUMNS, biomarker_table


def _stats():
    return pd.DataFrame({"feature": ["f0", "f1", "f2"], "q": [0.01, 0.2, 0.9], "p": [0.001, 0.1, 0.8],
                         "cliffs_delta": [0.9, 0.3, 0.0], "log2fc": [1.0, 0.2, 0.0],
                         "direction": ["up", "up", "none"]})


def test_null_controlled_motif_name_wins_over_a_small_q():
    # the catalogue's motif_name is empty where the naming failed its null, even at a small q
    cat = pd.DataFrame({"feature": ["f0", "f1", "f2"], "best_concept": ["tRNA", "CDS", ""],
                        "f1": [0.9, 0.7, np.nan], "captured": [True, False, False],
                        "best_motif": ["REB1", "GAL4", "ABF1"], "motif_q": [1e-4, 1e-3, 0.5],
                        "motif_name": ["REB1", "", np.nan]})
    table = biomarker_table(_stats(), catalog=cat)
    assert list(table.columns) == list(BIOMARKER_COLUMNS) and "motif_q" in table.columns
    t = table.set_index("feature")
    assert t.loc["f0", ["best_concept", "concept_f1", "best_motif", "motif_q"]].tolist() == \
        ["tRNA", 0.9, "REB1", 1e-4]
    assert t.loc["f1", "best_concept"] == "" and np.isnan(t.loc["f1", "concept_f1"])
    assert t.loc["f1", "best_motif"] == "" and np.isnan(t.loc["f1", "motif_q"])  # q 1e-3, not named
    assert t.loc["f2", "best_motif"] == ""
    assert t["motif_source"].tolist() == ["tomtom", "", ""]


def test_without_motif_name_the_q_threshold_decides():
    cat = pd.DataFrame({"feature": [0, 1, 2], "best_concept": ["tRNA", "CDS", "LTR"],
                        "f1": [0.9, 0.7, 0.6], "best_motif": ["REB1", "GAL4", "ABF1"],
                        "motif_q": [0.001, 0.04, 0.5]})
    c = catalog_claims(cat, motif_q_max=0.01)
    assert c["best_motif"].tolist() == ["REB1", "", ""]
    assert c["motif_q"].iloc[0] == 0.001 and c["motif_q"].iloc[1:].isna().all()
    assert (c["best_concept"] == "").all() and c["concept_f1"].isna().all()  # no `captured`: no claim
    assert catalog_claims(cat, motif_q_max=0.05)["best_motif"].tolist() == ["REB1", "GAL4", ""]
    t = biomarker_table(_stats(), catalog=cat, motif_q_max=0.05).set_index("feature")
    assert t.loc["f1", "best_motif"] == "GAL4" and t.loc["f2", "best_motif"] == ""


def test_motif_label_is_preferred_and_its_q_only_when_it_is_the_match():
    # motif_label (Tomtom name or held-out FIMO-site F1) is the catalogue's verdict; a label from
    # sites alone does not inherit the q of another raw match
    cat = pd.DataFrame({"feature": ["f0", "f1", "f2"], "best_motif": ["REB1", "GAL4", "GAL4"],
                        "motif_q": [1e-4, 1e-5, 1e-5], "motif_name": ["REB1", "", ""],
                        "motif_label": ["REB1", "ABF1", ""],
                        "motif_label_source": ["tomtom+sites", "sites", ""]})
    c = catalog_claims(cat).set_index("feature")
    assert c["best_motif"].tolist() == ["REB1", "ABF1", ""]
    assert c.loc["f0", "motif_q"] == 1e-4 and c.loc[["f1", "f2"], "motif_q"].isna().all()
    assert c["motif_source"].tolist() == ["tomtom+sites", "sites", ""]
    t = biomarker_table(_stats(), catalog=cat).set_index("feature")
    assert "GAL4" not in set(t["best_motif"]) and t.loc["f1", "motif_source"] == "sites"
