"""The API listener (Dojo's api.dojo.tech): everything except raw card data."""
