"""One module per tab, each with build(rt) (its components, under the tab) and wire(rt, tab, state, ...) (its
events and API endpoints). A tab imports the shared pieces from ui.components, never another tab; ui.app puts
the tabs in order and wires the events that join them."""
