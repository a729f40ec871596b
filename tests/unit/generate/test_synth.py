"""The transaction synthesizer: structure, rates, persistence, error paths, and agreement with SDV."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fraudlab.data.reference import load_reference
from fraudlab.exceptions import DataValidationError, FraudlabError, ModelFileError, NotFittedError
from fraudlab.generate.synth import TransactionSynthesizer
from fraudlab.schema.rules import rule_pass_rates
from fraudlab.schema.table import BALANCE_COLUMNS, CANONICAL_COLUMNS


@pytest.fixture(scope="module")
def reference():
    return load_reference()


@pytest.fixture(scope="module")
def model(reference):
    """Fitted on real non-frauds plus the real all-frauds file, weighted back to the population rate."""
    nonfraud = reference.sample[~reference.sample["is_fraud"]]
    train = pd.concat([nonfraud, reference.frauds], ignore_index=True)
    weights = np.r_[np.full(len(nonfraud), reference.nonfraud_weight), np.full(len(reference.frauds), 1.0)]
    return TransactionSynthesizer(seed=3).fit(train, weights=weights, progress=False)


@pytest.fixture(scope="module")
def sample(model):
    return model.sample(100_000, seed=11)


def test_sample_is_canonical(sample):
    assert list(sample.columns) == list(CANONICAL_COLUMNS)
    assert str(sample["type"].dtype) == "category"
    assert sample["amount"].dtype == "float64" and sample["is_fraud"].dtype == bool
    assert len(sample) == 100_000
    assert sample["name_dest"].str.startswith("M").eq(sample["type"] == "PAYMENT").all()


def test_accounting_identities_hold(sample):
    rates = rule_pass_rates(sample)
    assert rates["all"] >= 0.999
    assert rates["cash_in_credits_origin"] == 1.0 and rates["debits_origin_floored_at_zero"] == 1.0


@pytest.mark.parametrize("column", BALANCE_COLUMNS)
def test_exact_zero_shares_are_realistic(sample, reference, column):
    real = (reference.sample[column] == 0).mean()
    synthetic = (sample[column] == 0).mean()
    assert abs(real - synthetic) <= 0.03, f"{column}: real {real:.3f}, synthetic {synthetic:.3f}"


def test_type_mix_matches_the_population(sample, reference):
    real = reference.sample["type"].value_counts(normalize=True)
    synthetic = sample["type"].value_counts(normalize=True)
    assert (real - synthetic).abs().max() < 0.01


def test_natural_fraud_rate_is_the_population_rate(model, sample):
    assert model.natural_fraud_rate() == pytest.approx(8_213 / 6_362_620, rel=0.02)
    assert sample["is_fraud"].sum() == round(100_000 * model.natural_fraud_rate())
    assert set(sample.loc[sample["is_fraud"], "type"]) == {"TRANSFER", "CASH_OUT"}


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.5])
def test_fraud_rate_obeys_the_requested_value(model, rate):
    out = model.sample(10_000, seed=1, fraud_rate=rate)
    assert out["is_fraud"].sum() == round(10_000 * rate)


def test_frauds_empty_the_origin_account(model):
    frauds = model.sample(5_000, seed=2, conditions={"is_fraud": True})
    assert frauds["is_fraud"].all()
    emptied = np.isclose(frauds["amount"], np.minimum(frauds["old_balance_orig"], 1e7), atol=0.011)
    assert emptied.mean() > 0.9


def test_conditions_restrict_the_type(model):
    out = model.sample(2_000, seed=4, conditions={"type": ["TRANSFER", "DEBIT"]})
    assert set(out["type"]) == {"TRANSFER", "DEBIT"}
    with pytest.raises(FraudlabError, match=r"Invalid condition type=\['REFUND'\]"):
        model.sample(10, conditions={"type": "REFUND"})
    with pytest.raises(FraudlabError, match=r"Unsupported condition\(s\) \['amount'\]"):
        model.sample(10, conditions={"amount": 5})
    with pytest.raises(FraudlabError, match="needs fraud rows"):
        model.sample(10, conditions={"type": "PAYMENT"}, fraud_rate=0.5)


def test_seed_makes_samples_reproducible(model):
    pd.testing.assert_frame_equal(model.sample(1_000, seed=5), model.sample(1_000, seed=5))
    assert not model.sample(1_000, seed=5).equals(model.sample(1_000, seed=6))


def test_sampling_matches_sdvs_own_sampler(model):
    """Our vectorised draw and SDV's sampler give the same latent distribution for a segment."""
    segment = max(model.segments, key=lambda s: s.rows)
    ours = pd.DataFrame(segment.draw_latent(40_000, np.random.default_rng(0)))
    theirs = segment.sdv.sample(40_000)["segment"][segment.columns]
    assert np.abs(ours.corr().to_numpy() - theirs.corr().to_numpy()).max() < 0.03
    assert np.abs(ours.mean() - theirs.mean()).max() < 0.03
    assert np.abs(ours.std() - theirs.std()).max() < 0.03


def test_save_load_round_trip(model, tmp_path):
    manifest_path = model.save(tmp_path / "m.npz", metrics={"quality": 0.97})
    manifest = json.loads(manifest_path.read_text())
    assert manifest["format_version"] == 1 and manifest["metrics"] == {"quality": 0.97}
    assert manifest["training_data"]["rows"] == model.training["rows"]
    assert {"sdv", "numpy", "pandas"} <= set(manifest["libraries"])
    loaded = TransactionSynthesizer.load(tmp_path / "m.npz")
    pd.testing.assert_frame_equal(loaded.sample(2_000, seed=9), model.sample(2_000, seed=9))


def test_tampered_model_is_refused(model, tmp_path):
    model.save(tmp_path / "m.npz")
    data = bytearray((tmp_path / "m.npz").read_bytes())
    data[100] ^= 0xFF
    (tmp_path / "m.npz").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="was modified or corrupted"):
        TransactionSynthesizer.load(tmp_path / "m.npz")


def test_unknown_format_version_is_refused(model, tmp_path):
    manifest_path = model.save(tmp_path / "m.npz")
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = 99
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="version 99 is not one this fraudlab reads"):
        TransactionSynthesizer.load(tmp_path / "m.npz")
    with pytest.raises(ModelFileError, match="No model manifest"):
        TransactionSynthesizer.load(tmp_path / "absent.npz")


def test_fit_names_a_missing_column_and_an_unknown_type(reference):
    table = reference.sample.head(200)
    with pytest.raises(DataValidationError, match="missing column 'new_balance_dest'"):
        TransactionSynthesizer().fit(table.drop(columns="new_balance_dest"), progress=False)
    bad = table.astype({"type": "object"})
    bad.loc[bad.index[3], "type"] = "REFUND"
    with pytest.raises(DataValidationError, match="unknown value 'REFUND'"):
        TransactionSynthesizer().fit(bad, progress=False)


def test_unfitted_model_says_how_to_fix_it(tmp_path):
    with pytest.raises(NotFittedError, match=r"Call fit\(table\) first"):
        TransactionSynthesizer().sample(5)
    with pytest.raises(NotFittedError):
        TransactionSynthesizer().save(tmp_path / "x.npz")


@pytest.mark.slow
def test_cli_fit_then_sample(tmp_path):
    from click.testing import CliRunner

    from fraudlab.cli import cli
    from fraudlab.data.readers import read_transactions

    runner = CliRunner()
    fitted = runner.invoke(cli, ["fit", "--source", "reference", "--seed", "1", "-o", str(tmp_path / "m.npz")])
    assert fitted.exit_code == 0, fitted.output
    assert "Fitted: 28,606 rows in" in fitted.output and "rows/s" in fitted.output
    manifest = json.loads((tmp_path / "m.json").read_text())
    assert manifest["metrics"]["rules_all_synthetic"] >= 0.999
    assert manifest["metrics"]["quality_score"] >= 0.95
    assert manifest["metrics"]["evaluated_rows"] == 200_000
    assert manifest["training_data"]["weighted"] is True

    sampled = runner.invoke(cli, ["sample", "--model", str(tmp_path / "m.npz"), "--rows", "1000", "--seed", "1",
                                  "--fraud-rate", "0.1", "-o", str(tmp_path / "s.parquet")])
    assert sampled.exit_code == 0, sampled.output
    assert "Sampled: 1,000 rows" in sampled.output and "100 frauds" in sampled.output
    table = read_transactions(tmp_path / "s.parquet")
    assert len(table) == 1000 and int(table["is_fraud"].sum()) == 100


def test_fit_from_a_file_source(tmp_path, reference):
    from fraudlab.data.readers import write_transactions
    from fraudlab.generate.synth import load_training_data

    write_transactions(reference.sample, tmp_path / "real.csv.gz")
    training = load_training_data(tmp_path / "real.csv.gz", rows=20_000, seed=3, progress=False)
    assert len(training.table) == 20_000 and training.weights is None
    model = TransactionSynthesizer().fit(training.table, progress=False, source=training.description)
    assert model.training["source"].endswith("(rows=20000, seed=3)")
    assert len(model.sample(100, seed=0)) == 100


def test_segment_views(model):
    table = model.segment_table()
    assert table["share"].sum() == pytest.approx(1.0)
    assert set(zip(table["type"], table["is_fraud"], strict=True)) >= {("TRANSFER", True), ("CASH_OUT", True)}
    transfer_fraud = model.segment("TRANSFER", is_fraud=True)
    corr = transfer_fraud.correlation_frame()
    assert corr.shape[0] == corr.shape[1] == len(transfer_fraud.columns)
    assert np.allclose(np.diag(corr), 1.0)
    median_amount = transfer_fraud.marginal_quantiles("old_orig", np.array([0.5]))[0]
    assert 1e4 < median_amount < 1e7
    with pytest.raises(FraudlabError, match="No segment type='DEBIT', is_fraud=True"):
        model.segment("DEBIT", is_fraud=True)


def test_saving_is_byte_reproducible(model, tmp_path):
    """The same model gives the same file, so a refit of the committed model can be checked by its SHA-256."""
    first = json.loads(model.save(tmp_path / "a.npz").read_text())
    second = json.loads(model.save(tmp_path / "b.npz").read_text())
    assert first["sha256"] == second["sha256"]
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
