"""What only development, the tests and the bench need: the dev run, embedded servers, mock upstreams. Not shipped."""
