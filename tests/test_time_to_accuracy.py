"""Time to accuracy: training seconds until validation accuracy first reaches 0.80, 0.85 and 0.88."""

from dlcompare.train import time_to_accuracy


def epochs(*pairs):
    return [{"train_seconds": seconds, "val_accuracy": accuracy} for seconds, accuracy in pairs]


def test_first_epoch_that_reaches_each_level_counts_with_every_epoch_before_it():
    history = epochs((30.0, 0.70), (10.0, 0.82), (10.0, 0.79), (10.0, 0.86), (10.0, 0.87))
    assert time_to_accuracy(history) == {"0.80": 40.0, "0.85": 60.0, "0.88": None}


def test_one_epoch_can_pass_several_levels_and_a_later_dip_changes_nothing():
    history = epochs((12.5, 0.90), (10.0, 0.50))
    assert time_to_accuracy(history) == {"0.80": 12.5, "0.85": 12.5, "0.88": 12.5}


def test_exactly_at_the_level_counts_as_reached():
    assert time_to_accuracy(epochs((5.0, 0.85)))["0.85"] == 5.0
