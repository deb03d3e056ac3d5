"""What class-conditional models ask of a request: its class, and autoguidance's guide.

The rules read the guider's declarations (`needs_class`, `conditional_model`, `reference`), so
a new guider of class-conditional models states what it needs and writes no check of its own.
"""

from __future__ import annotations

from service.core.classes import CLASS_SPECS, class_names
from service.core.errors import RequestError
from service.core.guiders.base import Guider, Reference
from service.core.model import ReadyModel


def resolve_label(model: ReadyModel, g: Guider, label: int | str | None) -> int | None:
    """The class index a request samples (None: the null class, unconditional), or the
    RequestError naming `class` and what the model offers."""
    if model.num_classes == 0:
        if label is not None:
            raise RequestError(
                "class",
                f"model {model.name!r} is not class-conditional",
                "omitted; a class needs a conditional model (objective 'conditional')",
            )
        if g.conditional_model:
            raise RequestError(
                "variant",
                f"variant {g.name!r} needs a class-conditional model, and {model.name!r} "
                "is unconditional",
                "a model of objective 'conditional' (datasets boxes, gaussians, moons)",
            )
        return None
    names = class_names(model.dataset) if model.dataset in CLASS_SPECS else ()
    offered = f"0..{model.num_classes - 1}" + (f" or {list(names)}" if names else "")
    if g.conditional_model is False:
        if not model.is_oracle:
            raise RequestError(
                "variant",
                f"variant {g.name!r} does not run on class-conditional models",
                f"not {g.name}",
            )
        if label is not None:  # an oracle's null class is its exact marginal
            raise RequestError(
                "class", f"variant {g.name!r} samples the oracle's marginal", "omitted"
            )
        return None
    if label is None:
        if g.needs_class:
            raise RequestError("class", f"variant {g.name!r} needs a class", offered)
        return None
    if isinstance(label, str):
        if label not in names:
            raise RequestError("class", f"unknown class of model {model.name!r}", offered)
        return names.index(label)
    if not 0 <= label < model.num_classes:
        raise RequestError("class", f"class out of range for model {model.name!r}", offered)
    return label


def check_guide_field(model: ReadyModel, g: Guider, guide: ReadyModel | None) -> None:
    """A guider with a guide reference needs one of the same schedule and classes."""
    if g.reference is not Reference.GUIDE:
        return
    if model.is_oracle:
        raise RequestError(
            "model",
            f"{g.name} guides a model with a bad version of itself, and the oracle "
            f"{model.name!r} has none (it is exact)",
            "a learned conditional model; on the oracle, cfg or another class guider",
        )
    if guide is None:
        raise RequestError("guide_model", f"{g.name} needs a guide model", "a conditional model")
    if guide is model or guide.id == model.id:
        raise RequestError("guide_model", "a model cannot guide itself", "another model")
    same = guide.schedule.config == model.schedule.config
    if not same or guide.num_classes != model.num_classes or guide.is_energy:
        raise RequestError(
            "guide_model",
            f"guide {guide.name!r} must share {model.name!r}'s schedule and classes "
            f"({model.num_classes}) and predict eps",
            f"a conditional model of {model.dataset!r} with schedule {model.schedule.config.kind}",
        )
