"""One module per tab, each with build(rt) -> its components and wire(rt, tab, state, ...) -> its events.

A tab imports the shared pieces from ui.components, never another tab; ui.app wires the tabs together.
"""
