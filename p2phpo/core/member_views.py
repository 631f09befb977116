"""The member views the node driver keeps for its search (and its exit check).

:class:`MemberViews` holds one :class:`~p2phpo.core.search_types.MemberView`
(state, ready worker, study) and one (state, metadata) pair per known member,
updated from the membership on every member event (``update`` is the one
place they change), and hands the search only the views that changed since
it last got them: a full copy per input is O(N) at 1,000 nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from p2phpo.core.ledger import Ledger
from p2phpo.core.membership import Membership
from p2phpo.core.search import MemberView, SearchCore


class MemberViews:
    """Views of the members for the search, kept current from member events."""

    def __init__(self, node_id: int, ledger: Ledger, membership: Membership) -> None:
        self.node_id = node_id
        self.ledger = ledger
        self.membership = membership
        self.views: dict[int, MemberView] = {}
        self.metas: dict[int, tuple[str, Mapping[str, Any]]] = {}  # node -> (state, meta), as views
        self._changed: dict[int, None] = {}  # views changed since the search last got them
        self._gone: set[int] = set()  # members whose view is DEAD or LEFT
        self._sent: SearchCore | None = None  # the search holding ``views`` as last sent

    def update(self, node: int) -> None:
        """``node``'s membership changed: the one place ``views`` changes (``send`` relies on it)."""
        self._changed[node] = None
        m = self.membership.get(node)
        if m is None:
            self.views.pop(node, None)
            self.metas.pop(node, None)
            self._gone.discard(node)
            return
        meta = m.meta or {}
        self.views[node] = MemberView(m.state.name, bool(meta.get("ready")), meta.get("study"))
        if m.state.name in ("DEAD", "LEFT"):
            self._gone.add(node)
        else:
            self._gone.discard(node)
        self.metas[node] = (m.state.name, meta)  # a new meta comes with a member event

    def send(self, search: SearchCore, now: float) -> None:
        """Hand ``search`` the views: only the changed ones when it already holds the rest."""
        views = self.for_search()
        if views is self.views and self._sent is search:
            search.set_members(now, views, self._changed)
        else:
            search.set_members(now, views)
        self._sent = search if views is self.views else None
        self._changed = {}

    def for_search(self) -> dict[int, MemberView]:
        """The member views, plus, while no other member is alive, every origin of the
        ledger this node never met, as DEAD: a node restarted alone after the others
        exited must not wait forever on a trial whose owner it never saw (it is
        reclaimed after the lone-survivor fallback, like a DEAD member's)."""
        views = self.views
        if any(v.state in ("ALIVE", "SUSPECT") for n, v in views.items() if n != self.node_id):
            return views
        unknown = [o for o in self.ledger.vv if o not in views and o != self.node_id]
        if not unknown:
            return views
        return {**views, **{o: MemberView("DEAD") for o in unknown}}

    def peer_alive(self) -> bool:
        """Whether another member is ALIVE."""
        return any(v.state == "ALIVE" for n, v in self.views.items() if n != self.node_id)

    def any_gone(self) -> bool:
        """Whether a member is DEAD or LEFT."""
        return bool(self._gone)  # kept by ``update`` (a scan of 1,000 views per sync was not free)

    def known_metas(self) -> dict[int, tuple[str, Mapping[str, Any]]]:
        """(state, meta) of every member still listed (not reaped or evicted)."""
        known = self.membership.get
        return {n: v for n, v in self.metas.items() if known(n) is not None}
