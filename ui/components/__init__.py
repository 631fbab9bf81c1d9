"""What several tabs share: input widgets, HTML, figures, input parsing, snippet display, and the parts a tab
would otherwise hold twice over (a training run's view, the snippet editor)."""
