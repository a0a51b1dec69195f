/**
 * Every test process (and the CLI processes it starts, which inherit its
 * environment): no public router is asked for IPNS records or providers. A
 * test that wants a router names its own test router.
 */
process.env.CIDGET_ROUTERS ??= ''
