"""Lab basic: round robin across two nodes; a killed node costs no request."""

from __future__ import annotations

from pylab.stories import Story
from pylab.stories.common import alternation, survives_kill


def story(s: Story) -> None:
    alternation(s)
    survives_kill(s)
