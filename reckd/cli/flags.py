"""Flag parsers shared by every ``reckd`` subcommand (one spelling of each list, seed and option)."""

from __future__ import annotations

import argparse

from reckd.errors import ReckdError


def csv_list(text: str) -> tuple[str, ...]:
    """``a, b,c`` -> ``("a", "b", "c")``; emptiness and repeats are checked by the library, naming the flag."""
    return tuple(x.strip() for x in text.split(",") if x.strip())


def seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in csv_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, found {text!r}") from None


def method_options(pairs: list[str]) -> dict[str, dict[str, str]]:
    """``--set kd.tau=2 --set talking.rounds=2`` -> ``{"kd": {"tau": "2"}, "talking": {"rounds": "2"}}``."""
    options: dict[str, dict[str, str]] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        method, dot, option = key.partition(".")
        if not (eq and dot and method and option):
            raise ReckdError(f"--set: expected METHOD.OPTION=VALUE, found {pair!r}")
        options.setdefault(method, {})[option] = value
    return options


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda[:N] (default auto: CUDA when a GPU answers)")


def add_methods(parser: argparse.ArgumentParser, default: str, with_seeds: bool = True) -> None:
    parser.add_argument("--methods", type=csv_list, default=csv_list(default),
                        help=f"comma list of methods, each NAME or NAME+aug (default {default})")
    if with_seeds:
        parser.add_argument("--seeds", type=seeds, default=(0, 1, 2), help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.OPTION=VALUE",
                        help="override a method option, e.g. --set kd.tau=2 (repeatable)")


def add_model(parser: argparse.ArgumentParser, who: str) -> None:
    """The architecture flags of the model a command trains (``who``: the teacher or the students);
    unset flags keep the library's defaults."""
    from reckd.models.ranker import ARCHS

    parser.add_argument("--arch", choices=ARCHS, help=f"the {who}' architecture (default: the library's)")
    parser.add_argument("--embedding-dim", type=int, metavar="D", help=f"the {who}' embedding width")
    parser.add_argument("--hidden", type=csv_list, metavar="W1,W2,…", help=f"the {who}' MLP widths, lower first")
    parser.add_argument("--bias", action=argparse.BooleanOptionalAction, help=f"user and item bias terms in the {who}")
    parser.add_argument("--dropout", type=float, metavar="P", help=f"dropout after each of the {who}' MLP layers")


def _given(base, **flags):
    """``base`` (a config dataclass) with the fields whose flags were given (not None); the config
    checks the values."""
    import dataclasses

    return dataclasses.replace(base, **{name: value for name, value in flags.items() if value is not None})


def model_config(args: argparse.Namespace, base):
    """``base`` (a RankerConfig) with the model flags that were given; the config checks the sizes."""
    hidden = None
    if args.hidden is not None:
        try:
            hidden = tuple(int(w) for w in args.hidden)
        except ValueError:
            raise ReckdError(f"--hidden: expected comma-separated integers, found {','.join(args.hidden)!r}") from None
    return _given(base, arch=args.arch, embedding_dim=args.embedding_dim, bias=args.bias, hidden=hidden,
                  dropout=args.dropout)


def add_train(parser: argparse.ArgumentParser, who: str) -> None:
    """The optimisation flags of the model a command trains; unset flags keep the library's defaults."""
    parser.add_argument("--epochs", type=int, help="maximum epochs (default: the config's)")
    parser.add_argument("--batch-size", type=int, metavar="B", help=f"ratings per step for the {who} (default: "
                                                                      "the config's, scaled up beyond 1M ratings)")
    parser.add_argument("--lr", type=float, help=f"Adam's learning rate for the {who} (default: the config's, "
                                                 "scaled with the batch)")
    parser.add_argument("--weight-decay", type=float, metavar="W", help=f"Adam's weight decay for the {who} "
                                                                         "(default: the config's)")
    parser.add_argument("--ema", type=float, metavar="DECAY", help=f"validate and keep an exponential moving "
                        f"average of the {who}'s weights, DECAY per step (default: the config's; 0: off)")


def train_config(args: argparse.Namespace, base):
    """``base`` (a TrainConfig) with the training flags that were given; the config checks the ranges."""
    return _given(base, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                  ema=args.ema)


def scales(args: argparse.Namespace) -> bool:
    """Whether the batch and learning rate scale with the training set (``reckd.train.loop.scaled``):
    only while neither ``--batch-size`` nor ``--lr`` chooses them."""
    return args.batch_size is None and args.lr is None
