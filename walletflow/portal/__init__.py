"""The end customer's billing portal: signed links, what the page shows, the spend chart."""
