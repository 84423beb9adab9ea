"""Staged rankers: the stages compose to the plain forward; sizes and head are exposed as the models'
contract (``Dims``, ``HeadSpec``); the rating batch source feeds them and scores clipped RMSE."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from reckd.data.source import RatingSource
from reckd.models import Dims, HeadSpec
from reckd.models.ranker import Ranker, RankerConfig, count_parameters
from reckd.train.loop import predict_rows


def _features(data):
    return [(f.name, f.cardinality) for f in data.features]


def test_staged_forward_equals_plain_forward(synth_data):
    batch = synth_data.batch_rows(torch.arange(64))
    for head in ("scalar", "levels"):
        torch.manual_seed(0)
        model = Ranker(RankerConfig(head=head), _features(synth_data), synth_data.levels).eval()
        out = model(batch.sparse_features)
        staged = model.head(model.upper(model.lower(batch.sparse_features)))
        if head == "scalar":
            assert out.logits is None
            torch.testing.assert_close(staged, out.prediction, rtol=0, atol=0)
        else:
            torch.testing.assert_close(staged, out.logits, rtol=0, atol=0)
            expected = (torch.softmax(staged, 1) * torch.arange(1.0, 6.0)).sum(1)
            torch.testing.assert_close(out.prediction, expected)
        assert out.lower.shape == (64, 64) and out.upper.shape == (64, 32)


def test_the_bias_read_from_the_batch_equals_the_bias_tables_pooled(synth_data):
    """``Ranker.bias`` reads the user and item ids straight from the KJT: the same values and gradients as
    pooling the whole batch through the bias collection, whatever the order of the KJT's keys."""
    rows = torch.randperm(synth_data.rating.numel(), generator=torch.Generator().manual_seed(0))[:256]
    batch = synth_data.batch_rows(rows)
    model = Ranker(RankerConfig(bias=True), _features(synth_data), synth_data.levels)
    with torch.no_grad():
        for table in model.bias_ebc.embedding_bags.values():
            table.weight.normal_()
    kjt = batch.sparse_features
    reordered = kjt.permute(list(reversed(range(len(kjt.keys())))))
    pooled = model.bias_ebc(kjt).values().sum(dim=1, keepdim=True)
    for features in (kjt, reordered):
        torch.testing.assert_close(model.bias(features), pooled, rtol=0, atol=0)
    grads = []
    for bias in (model.bias(kjt), pooled):
        model.zero_grad()
        bias.square().sum().backward(retain_graph=True)
        grads.append([t.weight.grad.clone() for t in model.bias_ebc.embedding_bags.values()])
    for ours, theirs in zip(*grads):
        torch.testing.assert_close(ours, theirs)


def test_teacher_and_student_sizes(synth_data):
    teacher = Ranker(RankerConfig.teacher(), _features(synth_data), synth_data.levels)
    student = Ranker(RankerConfig.student(), _features(synth_data), synth_data.levels)
    assert teacher.dims == Dims(257, 65) and student.dims == Dims(lower=257, upper=129)  # + the bias channel
    assert Dims(*student.dims) == student.dims and student.dims.upper == 129  # a tuple, as distill unpacks it
    assert student.head_spec == HeadSpec("rating", (1.0, 2.0, 3.0, 4.0, 5.0)) == teacher.head_spec
    # at most 1/10 of the README teacher: the mean of 5 `dcn` and 5 `dlrm` starts of the teacher's sizes
    dlrm = Ranker(dataclasses.replace(RankerConfig.teacher(), arch="dlrm"), _features(synth_data), synth_data.levels)
    assert count_parameters(student) * 10 <= 5 * (count_parameters(teacher) + count_parameters(dlrm))
    assert count_parameters(student) < count_parameters(teacher)
    # a scalar head starts at the middle of the scale
    with torch.no_grad():
        out = student.eval()(synth_data.batch_rows(torch.arange(8)).sparse_features)
    assert out.prediction.shape == (8,)
    assert torch.allclose(student.head_layer.bias, torch.tensor([3.0]))


def test_rating_source_feeds_the_ranker_and_scores_clipped_rmse(synth_data):
    source = RatingSource(synth_data)
    rows = synth_data.rows("val")[:50]
    kjt, labels = source.batch(rows)
    assert torch.equal(labels, synth_data.rating[rows]) and kjt.keys() == [f.name for f in synth_data.features]
    assert source.metric == "rmse" and source.lower_is_better
    # the score clips to the scale, by hand: a constant 7 scores as 5, a constant −1 as 1
    for constant, clipped in ((7.0, 5.0), (-1.0, 1.0)):
        want = math.sqrt(((labels - clipped) ** 2).mean().item())
        assert source.score(torch.full((50,), constant), rows) == pytest.approx(want, rel=1e-6)
    # predictions leave the model in the mode it was in (a frozen teacher stays in eval)
    model = Ranker(RankerConfig(dropout=0.5), _features(synth_data), synth_data.levels)
    for training in (False, True):
        model.train(training)
        predict_rows(model, None, synth_data, rows)
        assert all(m.training == training for m in model.modules())
