"""FID, IS and KID from features (`stats`), feature extractors (`features`), cached real stats (`reference`)."""
