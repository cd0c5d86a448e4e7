"""Catalog: exchange rates, products, price versions and customer subscriptions."""
