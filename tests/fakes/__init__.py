"""Test doubles for the *collaborators* of the code under test, never for the code itself."""
