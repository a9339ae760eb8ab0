#version 330 core
// The unit normal in the OpenCV camera frame (x right, y down, z forward), the side facing
// the camera, encoded as colour = (n + 1) / 2; the background stays (0, 0, 0).
in vec3 frag_normal;
in vec3 frag_position;
out vec4 frag_color;

void main()
{
    // The triangle's own normal, turned towards the camera (at the origin), decides the
    // side: a mesh seen from inside, or one whose normals point inwards, still gets the
    // normal of the surface the camera sees.
    vec3 face = normalize(cross(dFdx(frag_position), dFdy(frag_position)));
    if (dot(face, -frag_position) < 0.0)
        face = -face;
    vec3 n = normalize(frag_normal);
    if (dot(n, face) < 0.0)
        n = -n;
    n = vec3(n.x, -n.y, -n.z);  // OpenGL camera axes -> OpenCV
    frag_color = vec4(n * 0.5 + 0.5, 1.0);
}
