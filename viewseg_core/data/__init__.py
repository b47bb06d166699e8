"""Views from every source (synthetic scenes, Hypersim, Replica, bags) as one record type."""
