"""ConfigView: the read-only, attribute-access plain copy of a resolved config that the
pipeline reads (config.config_view makes it). Imports nothing of simgen's."""
from __future__ import annotations


class ConfigView(dict):
    """A read-only plain copy of a resolved config with attribute access (``cfg.camera.width``)
    at dict speed. The pipeline reads hundreds of values per image; through OmegaConf each
    read costs ~20 us (~10% of an image's CPU time), through this a dict lookup."""

    __slots__ = ()

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        raise AttributeError("a ConfigView is read-only; change the OmegaConf config it was made from")

    def _blocked(self, *args, **kwargs):
        raise TypeError("a ConfigView is read-only; change the OmegaConf config it was made from")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _blocked


def config_view(cfg) -> ConfigView:
    """The ConfigView of ``cfg`` (interpolations resolved; lists become tuples)."""
    from omegaconf import OmegaConf

    if isinstance(cfg, ConfigView):
        return cfg

    def freeze(v):
        if isinstance(v, dict):
            return ConfigView((k, freeze(x)) for k, x in v.items())
        if isinstance(v, list):
            return tuple(freeze(x) for x in v)
        return v

    return freeze(OmegaConf.to_container(cfg, resolve=True))
