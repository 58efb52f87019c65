package farmtls

// IdentityOfURI is the parse that Identity applies to a farmgate URI SAN.
var IdentityOfURI = parseNodeURI
