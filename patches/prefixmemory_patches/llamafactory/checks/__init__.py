"""Our own checks of a run's input, called by the bends before any model weight loads; they patch nothing."""
