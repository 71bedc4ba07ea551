"""Ready-made sparkmm jobs (run them with the ``sparkmm`` command)."""
