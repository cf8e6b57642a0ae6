//! natrec fixture recorders and traffic generators.
