"""The token cache's own rules: armed or nothing, no lookup older than a change, a minute at most."""

from __future__ import annotations

from fleet_server.domain.token_cache import TokenCache


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def armed_cache(entries: int = 4, ttl_s: float = 60.0) -> tuple[TokenCache[str], Ticks]:
    ticks = Ticks()
    cache: TokenCache[str] = TokenCache(entries, ttl_s=ttl_s, monotonic=ticks)
    cache.arm()
    return cache, ticks


def test_a_kept_lookup_is_served_until_its_time_is_up() -> None:
    cache, ticks = armed_cache(ttl_s=60.0)
    cache.put("d1", "acme", cache.generation)
    ticks.now += 59.9
    assert cache.get("d1") == "acme"
    ticks.now += 0.2
    assert cache.get("d1") is None
    assert (cache.hits, cache.misses, cache.size) == (1, 1, 0)


def test_nothing_is_served_or_kept_while_changes_may_go_unheard() -> None:
    cache: TokenCache[str] = TokenCache(4)
    cache.put("d1", "acme", cache.generation)
    assert cache.get("d1") is None
    assert cache.size == 0
    cache.arm()
    cache.put("d1", "acme", cache.generation)
    cache.disarm()
    assert cache.get("d1") is None
    assert cache.size == 0
    cache.put("d1", "acme", cache.generation)
    assert cache.size == 0


def test_a_lookup_that_began_before_a_change_is_not_kept() -> None:
    cache, _ = armed_cache()
    began = cache.generation
    cache.invalidate()  # the customer was deactivated while the lookup ran
    cache.put("d1", "acme as it was", began)
    assert cache.get("d1") is None
    cache.put("d1", "acme", cache.generation)
    assert cache.get("d1") == "acme"


def test_a_change_forgets_every_entry() -> None:
    cache, _ = armed_cache()
    for digest in ("d1", "d2", "d3"):
        cache.put(digest, digest.upper(), cache.generation)
    cache.invalidate()
    assert [cache.get(d) for d in ("d1", "d2", "d3")] == [None, None, None]


def test_a_full_cache_lets_its_oldest_entry_go() -> None:
    cache, _ = armed_cache(entries=2)
    for digest in ("d1", "d2", "d3"):
        cache.put(digest, digest.upper(), cache.generation)
    assert [cache.get(d) for d in ("d1", "d2", "d3")] == [None, "D2", "D3"]


def test_zero_entries_is_no_cache() -> None:
    cache, _ = armed_cache(entries=0)
    assert not cache.enabled
    cache.put("d1", "acme", cache.generation)
    assert cache.get("d1") is None
