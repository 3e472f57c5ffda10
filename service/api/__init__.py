"""Protocol doors, one blueprint each; all of them hand decoded arrays to the one core."""
