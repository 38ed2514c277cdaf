"""Pure training code: data, initial weights and settings in; weights and history out."""
