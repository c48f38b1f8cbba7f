extension Annotation {
    /// Every key the controller sets or changes (it also removes `accept-enrollment` once it has used it up).
    public static let controllerOwned = [
        podCIDRs, publicKey, sealedPrivateKey, keyGeneration, keyIssuedAt, nextPublicKey,
        nextSealedPrivateKey, endpoint, rotateAnswered, sealedTo,
    ]
    /// Every key people set: `wgmesh rotate-keys` writes `rotate-request`; an operator the override and the acceptance.
    public static let peopleOwned = [endpointOverride, rotateRequest, acceptEnrollment]

    /// Every `wgmesh.dev/` key, once each, by writer: what the admission policies
    /// (manifests/admission-policies.yaml) let each writer set; any other `wgmesh.dev/` key is refused as unknown.
    public static let known = controllerOwned + agentOwned + peopleOwned
}
