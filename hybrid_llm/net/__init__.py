"""Everything that touches the network: the offline guard, web search and page fetching."""
